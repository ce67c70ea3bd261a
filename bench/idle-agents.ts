export const main = async (_count: number): Promise<void> => {
  throw new Error('todo');
};
